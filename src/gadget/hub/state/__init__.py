"""Who owns what: each drone's state machine (drones.py) backed by its lease row
(store/leases.py), who is connected where (presence.py), IDE sockets (ides.py), and
the deadlines swept by any live node (sweeper.py)."""
