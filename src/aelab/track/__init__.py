"""Experiment trackers (``--track tensorboard|mlflow``): event consumers, nothing imported unless asked."""
