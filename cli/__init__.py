"""`python -m cli`: Loadbay's command-line client, for API consumers and scripts (see README, "The CLI")."""
