"""`robust slice`: loss-landscape slices. What a slice is (config), its directions, the
batched evaluation of a curve's grid points (curves) and the driver that stores them (run)."""
