"""The cohort stage: what comes in before preprocessing.

`phantom` (the synthetic cohort written in the real formats), `bonefinder` (running BoneFinder on a
manifest), `landmarks` (BoneFinder points: checks, head circle, the four target groups), `references`
(reading the expert references CSV), `sharding` (cutting a cohort's units into shard jobs).
"""
