"""eco_value.carbon"""
