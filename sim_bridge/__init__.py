"""The sim bridge (`nitrogen_jax.sim_bridge`, folder `sim_bridge/`): the model playing real games.

- `controller`: standard gamepad states -> virtual controller reports (xbox_one, ps4, generic); menu masking.
- `agent`: `PolicyAgent` (temperature-scaled sampling) and the `RandomAgent` baseline.
- `env`, `retro_env`, `ale_env`: frame-stepped Gymnasium environments on stable-retro and ALE.
- `play`, `recorder`, `visualize`: the play loop, recordings in the public dataset layout, the action visualiser.
- `server`, `wire`: the release's ZeroMQ protocol (pickle through a whitelist, or msgpack).
- `tasks`, `evaluate`, `report`: the evaluation harness.
"""
