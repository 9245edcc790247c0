"""usjepa: ultrasound foundation models with SALT / US-JEPA pretraining and an UltraBench-style benchmark."""

__version__ = "0.1.0"
