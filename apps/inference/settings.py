"""Configuration of the inference service, from environment variables (prefix VIGIL_INFERENCE_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.profiles import PROFILES


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_INFERENCE_", protected_namespaces=())

    port: int = Field(8003, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    model_names: list[str] = Field(default_factory=lambda: sorted({p.model_name for p in PROFILES.values()}))
    max_batch_rows: int = Field(512, ge=1)
    max_wait_ms: float = Field(2.0, ge=0)
    # Fallback to the model-updates topic: look at the champion pointer this often.
    poll_seconds: float = Field(15.0, gt=0)
    intra_op_threads: int = Field(1, ge=1)
    # The rows predicted are counted per feature in the card's reference bins (training's drift reads
    # them) in windows this long; an answer covers the current and the previous window.
    inputs_window_seconds: float = Field(43_200.0, gt=0)
    # Each replica writes the counts it made since its last write to the state store this often (one
    # etag-guarded write per served version, none when nothing was predicted): a crash loses at most
    # this long of its counts; a clean stop loses none.
    inputs_flush_seconds: float = Field(10.0, gt=0, le=3600)
    # The model-signing public key (base64 of 32 bytes) that every served record must verify under. Unset:
    # read from the secret store (the local profiles); Kubernetes sets it from the vigil-model-signing Secret.
    verify_key: str | None = None


@lru_cache
def get_settings() -> InferenceSettings:
    return InferenceSettings()
