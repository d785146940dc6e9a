"""The ``rce`` command: serve, doctor, image build, gc, bench (click)."""
