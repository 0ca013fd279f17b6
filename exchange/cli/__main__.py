from exchange.cli.main import run

run()
