"""Ingestion service: validates sensor reading batches and fans them out to EquipmentActors."""
