"""Quality against Gatys et al. on one fixed objective: `stylenet eval` (judge) and its report and grid (report).
Imports stylenet.core, stylenet.models and stylenet.running (the optimizer it judges against, the models it runs);
training evaluates its runs through it."""
