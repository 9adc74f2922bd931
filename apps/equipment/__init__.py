"""Equipment service: the EquipmentActor (one virtual actor per machine) and its transport-free core."""
