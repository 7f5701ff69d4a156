"""Readers and writers: VASP, extxyz/ASE, Alexandria JSON. They return plain records."""
