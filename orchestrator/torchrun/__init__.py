"""torchrun stages: launch a script under torchrun, the stage side of ctx.torchrun, the agent, loopback."""
