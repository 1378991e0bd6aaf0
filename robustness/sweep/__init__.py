"""`robust sweep`: what a sweep is (config, resolve), how one level of one curve is
evaluated (units), the driver that plans, runs and commits cells (run), and the rule that
skips levels past collapse (chance)."""
