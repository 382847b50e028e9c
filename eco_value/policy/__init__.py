"""eco_value.policy"""
