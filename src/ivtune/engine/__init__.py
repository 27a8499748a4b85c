"""The training engine shared by every task: Lightning Trainer set-up, resumable sampling, atomic checkpoints."""
