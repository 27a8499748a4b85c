"""One LightningModule (+ data module) per task; the engine in :mod:`ivtune.engine.run` drives them."""
