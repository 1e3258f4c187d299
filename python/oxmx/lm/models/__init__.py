"""``oxmx.lm.models``: the architectures live in Rust (oxmx-lm); ``cache`` has the prompt caches."""
