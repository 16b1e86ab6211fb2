"""crossfed ClientApp: what each platform runs next to its own data."""
