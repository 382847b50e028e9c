"""eco_value.exchange"""
