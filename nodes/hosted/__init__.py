"""Hosted nodes, by concern. Imports go one way (pyproject.toml's import contracts check it):

    providers/     one folder per provider: wire format, API calls, nodes
    node.py        HostedNode: what every hosted node shares (check, plan, cache, caps, call, account)
    money/         prices, the ledger of what was spent, the caps, the whole prompt's budget
    store/         files that outlive a run: the request journal, the result cache
    http/          policies, one exchange, the client, submit-and-poll, downloads, rate limits
    keys/          where keys come from; keeping them out of every text
    provider_table.py  every provider's facts, declared once
"""
