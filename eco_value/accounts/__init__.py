"""eco_value.accounts"""
