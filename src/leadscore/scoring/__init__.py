"""The pure scoring core: previous state + events + model -> new state + output events."""
