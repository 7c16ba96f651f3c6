"""Meterplane's CrossGuard policy pack, as pure functions.

One module of validators per domain (``encryption``, ``exposure``, ``redundancy``,
``residency``, ``retention``, ``hardening``, ``tagging``) over the plain model in
``core``; ``registry`` lists them and decides levels; ``crossguard`` wraps them for
``pulumi_policy``; ``__main__`` builds the PolicyPack for ``pulumi preview --policy-pack
policies``. ``meterplane policy-check`` runs the same functions without the engine.
"""
