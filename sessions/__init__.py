"""Evaluation sessions: who evaluates which bid, where.

``sessions.seating`` assigns the experts of each bid to seats at random (``evalwatch seats``).
"""
