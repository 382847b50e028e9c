"""eco_value.services"""
