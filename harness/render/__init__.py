"""Render: the leaderboard, the CI summary, the web page, the plots and the montages, all made
from result records alone."""
