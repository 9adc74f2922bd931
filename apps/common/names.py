"""Every Dapr name Vigil uses, written exactly once.

App ids, component names, topics, actor types and reminder names live here so code, `dapr.yaml`,
the component files and the Kubernetes manifests cannot drift apart (a unit test checks they agree).
"""

from typing import Final

# App ids (one Dapr app per service folder under apps/).
INGESTION_APP_ID: Final = "ingestion"
EQUIPMENT_APP_ID: Final = "equipment"
INFERENCE_APP_ID: Final = "inference"
TRAINING_APP_ID: Final = "training"
ALERTING_APP_ID: Final = "alerting"
DASHBOARD_APP_ID: Final = "dashboard"
ARCHIVER_APP_ID: Final = "archiver"
GATEWAY_APP_ID: Final = "gateway"  # the single public entry: API keys, scopes, rate limits
ALL_APP_IDS: Final = (
    INGESTION_APP_ID,
    EQUIPMENT_APP_ID,
    INFERENCE_APP_ID,
    TRAINING_APP_ID,
    ALERTING_APP_ID,
    DASHBOARD_APP_ID,
    ARCHIVER_APP_ID,
    GATEWAY_APP_ID,
)

# Components, named after their role; each environment picks the type behind the name.
STATE_STORE: Final = "statestore"  # actor state (actorStateStore: "true") and app state
MODEL_STORE: Final = "modelstore"  # model registry, keyPrefix: name, scoped to training + inference
PUBSUB: Final = "pubsub"
SECRET_STORE: Final = "secretstore"
# The model-signing private key's store: the same file (or Secret) as secretstore, but scoped to training
# alone (component scopes) and, by secret scopes, to that one key (apps/common/signing.py).
MODEL_SIGNING_STORE: Final = "modelsigning"
# Output binding (create/get/list) holding the reading archive and the equipment events: a folder
# (bindings.localstorage) locally, a blob store in the cloud. Layout: apps/common/archive.py.
ARCHIVE_BINDING: Final = "archive"
# Output binding alerting sends alert changes through (create = POST of the JSON payload): bindings.http
# to a webhook whose URL is in the secret store in the shipped profiles; SMTP, Slack, MQTT, Kafka are a
# component file swap.
NOTIFICATIONS_BINDING: Final = "notifications"
# Input binding (bindings.cron) whose fires ask training whether to retrain (enough new labelled runs,
# feature drift); training serves its route, POST /retrain-schedule.
RETRAIN_SCHEDULE_BINDING: Final = "retrain-schedule"

# Topics.
TOPIC_SENSOR_READINGS: Final = "sensor-readings"
TOPIC_READINGS_DEAD_LETTER: Final = "readings-deadletter"
TOPIC_ALERTS: Final = "alerts"
TOPIC_EQUIPMENT_HEALTH: Final = "equipment-health"
TOPIC_MODEL_UPDATES: Final = "model-updates"
TOPIC_READINGS_ACCEPTED: Final = "readings-accepted"  # ingestion -> archiver: what the actors took

# Actors.
EQUIPMENT_ACTOR_TYPE: Final = "EquipmentActor"
SILENCE_REMINDER: Final = "silence-check"
