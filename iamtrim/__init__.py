"""iamtrim: least-privilege IAM policies from what AWS principals actually did.

Pipeline (see docs/design.md): sources → normalize → usage store → usage graph → synthesize →
verify → render. Only :mod:`iamtrim.cli` prints or exits.
"""

__version__ = "0.1.0"
