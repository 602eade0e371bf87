"""The fault campaign: a seeded nemesis mixing faults under load, and a history checker."""
