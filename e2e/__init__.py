"""The main job end to end: scripted players filmed with an input overlay, the actions read back off the video,
shards, a small policy trained on them, evaluated against random and constant-action baselines, one report page.
"""
