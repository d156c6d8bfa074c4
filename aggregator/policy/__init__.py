"""Policy selection: which healthy clusters answer each name, per client view."""
