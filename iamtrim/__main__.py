from iamtrim.cli import run

run()
