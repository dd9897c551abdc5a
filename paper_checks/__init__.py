"""paper_checks"""
