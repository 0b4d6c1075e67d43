"""Overlay action extraction: controller inputs read off gameplay videos that show an input overlay.

The renderer (`styles`, `render`, `synth`) draws what streamers draw, so the extractor has ground truth to learn and
be measured on; the extractor finds the overlay (`localize`), parses it (`parser`) and cleans the result into the
public label layout (`clean`, `extract`).
"""
