"""eco_value.store"""
