from recbole_duet.model.duet import DUET

__all__ = ["DUET"]
