"""eco_value.outputs"""
