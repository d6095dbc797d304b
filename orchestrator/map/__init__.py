"""Map stages: fan items out to workers, store their results in segments, assemble the output."""
