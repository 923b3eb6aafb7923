"""Known-direction cases (issue 11): models whose feature direction at one residual site is known."""

from cases.direction.case import DirectionSite, SentimentDirectionCase, load_direction_model

__all__ = ["DirectionSite", "SentimentDirectionCase", "load_direction_model"]
