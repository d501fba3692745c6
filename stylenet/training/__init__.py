"""Training a network: Hydra config checks (config), the data (data), each kind's Lightning system (systems/),
the callbacks and the run itself (callbacks, trainer). Imports every side but benchmarks (a run can evaluate
itself through stylenet.evaluation)."""
