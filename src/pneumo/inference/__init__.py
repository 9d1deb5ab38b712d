"""Prediction: ``Predictor.load(model).predict(source)``, the one way to run a model on images."""
