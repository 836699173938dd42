"""Figures and tables, drawn from files under results/ only (never from models)."""
