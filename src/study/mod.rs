//! The study domain: studies, prompts, images, pairs, scheduling, participants, votes. The rules, no HTTP.
