"""Test lab only: the Celery app of the site's own encoding worker (Pod's encoding runs through the
frontal's Redis, db 5, queue "celery"). It reads its broker from the environment, as Pod's settings
give it, and has one task that leaves a trace in the worker's log."""

import os

from celery import Celery

app = Celery("lab_encoding", broker=os.environ["LAB_ENCODING_BROKER_URL"])


@app.task(name="lab.encoding.echo")
def echo(text):
    """Log and return TEXT: the tests look for it in the worker's log."""
    print("lab-encoding-echo %s" % text)
    return text
