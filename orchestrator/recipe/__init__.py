"""Recipes: the YAML a user writes, validated into frozen dataclasses."""

from orchestrator.recipe.load import load_recipe, schema
from orchestrator.recipe.model import DependencySpec, Recipe

__all__ = ["DependencySpec", "Recipe", "load_recipe", "schema"]
