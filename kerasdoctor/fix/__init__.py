"""Remedies computed from the data or the model: class weights, output bias, threshold, ..."""
