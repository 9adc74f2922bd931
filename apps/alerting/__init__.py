"""alerting: consumes alerts, health snapshots and dead letters; keeps alert lifecycles and fleet health."""
