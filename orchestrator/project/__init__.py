"""The user's project: stage declarations, param files and sets, project loading, data named by params, file sets."""
