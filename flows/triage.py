"""Ticket triage: one prompt that classifies a support ticket into a category and a priority.

promptlab run flows/triage.py -i text="My kettle shows E3 and smells of burning plastic"
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from promptlab import Flow, Prompt


class Ticket(BaseModel):
    text: str = Field(min_length=1, description="The ticket as the customer wrote it.")


class Triage(BaseModel):
    category: Literal["billing", "shipping", "technical", "account", "returns", "other"]
    priority: Literal["low", "medium", "high"]


classify = Prompt(
    name="classify_ticket",
    system=(
        "You triage support tickets for Nimbus Home, a shop for smart kettles.\n"
        "Categories: billing (payments, invoices, charges), shipping (delivery, tracking), "
        "technical (the kettle or the app misbehaves, error codes), account (login, password, "
        "profile), returns (refunds, returning an item), other.\n"
        "Priority: high for safety problems, money taken wrongly or a blocked customer; "
        "medium when something is broken or late; low for questions."
    ),
    user="Ticket: {text}",
    output=Triage,
    temperature=0.0,
    seed=7,
    max_tokens=40,
)

triage = Flow(
    name="triage",
    description="Classifies a support ticket into category and priority.",
    input=Ticket,
    output=Triage,
    steps=[classify],
)
