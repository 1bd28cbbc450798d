"""MovieLens 1M → DeepCTR AutoInt / AutoInt+MLP → honest evaluation → Top-10 recommendations."""
