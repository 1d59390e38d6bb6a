"""File formats the service reads and writes: Ground Truth manifests, image files, mask PNGs."""
