"""Label words of the generated charts and maps, with a disjoint set for the `heldout` split.

`train`, `val` and `test` draw from the "train" lists; `heldout` draws only from the "heldout" lists, so a
model evaluated there reads words it never saw in an image. The "easy" lists are small (eight short
words per chart or map family) because a tiny model learns to read a small closed vocabulary far
sooner than an open one.

Words shared by construction (function words in titles such as "by", the suffixes "St"/"Ave", and the
fixed map words "Park", "River", "N", "m") are not label words and are listed in `FUNCTION_WORDS`.
"""
from __future__ import annotations

from dataclasses import dataclass

from minimax_vl.data.splits import vocabulary_split

FUNCTION_WORDS = frozenset({"by", "of", "per", "in", "St", "Ave", "Park", "River", "N", "m"})


@dataclass(frozen=True)
class Theme:
    """A chart topic: its categories and the words its titles and axes are built from."""

    category_axis: str  # names the categories, e.g. "Fruit"
    categories: tuple[str, ...]
    value_names: tuple[str, ...]  # what the values measure, e.g. "Sales"


@dataclass(frozen=True)
class Vocabulary:
    themes: tuple[Theme, ...]
    series: tuple[str, ...]  # legend entries of grouped bars / multi-line charts
    line_positions: tuple[str, ...]  # ordered x positions of line charts
    line_axis: str  # names those positions, e.g. "Year"
    title_templates: tuple[str, ...]  # formatted with {value} and {category}
    landmarks: tuple[str, ...]
    vertical_streets: tuple[str, ...]  # run north-south; drawn with the suffix " St"
    horizontal_streets: tuple[str, ...]  # run east-west; drawn with the suffix " Ave"
    # Easy style: a few short words per family.
    easy_bar_categories: tuple[str, ...]
    easy_pie_categories: tuple[str, ...]
    easy_titles: tuple[str, ...]
    easy_category_axes: tuple[str, ...]
    easy_value_axes: tuple[str, ...]
    easy_landmarks: tuple[str, ...]
    easy_vertical_streets: tuple[str, ...]
    easy_horizontal_streets: tuple[str, ...]

    def label_words(self) -> frozenset[str]:
        """Every word that can appear as a label in this vocabulary (function words excluded)."""
        words: set[str] = set()
        for theme in self.themes:
            words.update(theme.categories, theme.value_names, [theme.category_axis])
        words.add(self.line_axis)
        for name in (
            "series", "line_positions", "landmarks", "vertical_streets", "horizontal_streets",
            "easy_bar_categories", "easy_pie_categories", "easy_titles", "easy_category_axes",
            "easy_value_axes", "easy_landmarks", "easy_vertical_streets", "easy_horizontal_streets",
        ):
            words.update(getattr(self, name))
        for template in self.title_templates:
            words.update(w for w in template.split() if not w.startswith("{"))
        return frozenset(w for phrase in words for w in phrase.split()) - FUNCTION_WORDS


TRAIN = Vocabulary(
    themes=(
        Theme("Fruit", ("Apple", "Pear", "Plum", "Mango", "Lemon", "Grape", "Peach", "Cherry", "Melon", "Kiwi"),
              ("Sales", "Price", "Weight", "Orders")),
        Theme("Animal", ("Lion", "Tiger", "Zebra", "Horse", "Panda", "Koala", "Otter", "Camel", "Llama", "Moose"),
              ("Count", "Speed", "Age", "Births")),
        Theme("City", ("Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Rome", "Delhi", "Seoul", "Dubai", "Miami"),
              ("Visitors", "Rainfall", "Hotels", "Parks")),
        Theme("Sport", ("Soccer", "Tennis", "Golf", "Rugby", "Hockey", "Boxing", "Rowing", "Skiing", "Cycling", "Judo"),
              ("Players", "Fans", "Medals", "Teams")),
        Theme("Product", ("Phone", "Laptop", "Tablet", "Camera", "Watch", "Router", "Speaker", "Monitor", "Printer", "Mouse"),
              ("Units", "Revenue", "Returns", "Reviews")),
        Theme("Subject", ("Math", "Physics", "History", "Art", "Music", "Biology", "Chemistry", "Drama", "Poetry", "Latin"),
              ("Students", "Score", "Hours", "Classes")),
    ),
    series=("Online", "Retail", "Export", "Local"),
    line_positions=tuple(str(year) for year in range(2008, 2025)),
    line_axis="Year",
    title_templates=("{value} by {category}", "{category} {value}", "{value} per {category}"),
    landmarks=("Bank", "Museum", "Library", "School", "Hospital", "Bakery", "Cinema", "Market", "Church", "Hotel",
               "Stadium", "Theater", "Station", "Pharmacy", "Garage", "Castle"),
    vertical_streets=("Oak", "Elm", "Pine", "Ash", "Birch", "Cedar", "Maple", "Willow"),
    horizontal_streets=("Ruby", "Jade", "Opal", "Pearl", "Amber", "Coral", "Onyx", "Topaz"),
    easy_bar_categories=("Ant", "Bee", "Cat", "Dog", "Elk", "Fox", "Owl", "Yak"),
    easy_pie_categories=("Tea", "Jam", "Pie", "Bun", "Egg", "Ham", "Oat", "Rye"),
    easy_titles=("Counts", "Scores", "Votes", "Sales"),
    easy_category_axes=("Type", "Group"),
    easy_value_axes=("Count", "Score"),
    easy_landmarks=("Zoo", "Gym", "Inn", "Spa", "Cafe", "Mall", "Fort", "Shop"),
    easy_vertical_streets=("Oak", "Elm", "Ash", "Fir"),
    easy_horizontal_streets=("Ruby", "Jade", "Opal", "Gold"),
)

HELDOUT = Vocabulary(
    themes=(
        Theme("Vegetable", ("Carrot", "Potato", "Onion", "Pepper", "Celery", "Radish", "Turnip", "Garlic", "Spinach", "Leek"),
              ("Harvest", "Demand", "Yield", "Crates")),
        Theme("Bird", ("Eagle", "Falcon", "Parrot", "Pigeon", "Sparrow", "Crow", "Raven", "Puffin", "Toucan", "Owlet"),
              ("Sightings", "Nests", "Flocks", "Wingspan")),
        Theme("Instrument", ("Piano", "Violin", "Guitar", "Flute", "Drum", "Cello", "Harp", "Trumpet", "Banjo", "Oboe"),
              ("Sold", "Lessons", "Rentals", "Stock")),
        Theme("Planet", ("Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto", "Ceres", "Eris"),
              ("Moons", "Missions", "Probes", "Photos")),
        Theme("Vehicle", ("Truck", "Bus", "Tram", "Ferry", "Scooter", "Van", "Taxi", "Subway", "Bicycle", "Glider"),
              ("Trips", "Riders", "Delays", "Routes")),
    ),
    series=("Morning", "Evening", "Weekday", "Weekend"),
    line_positions=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    line_axis="Month",
    title_templates=("{value} by {category}", "{category} {value}", "{value} of each {category}"),
    landmarks=("Temple", "Arena", "Gallery", "Embassy", "Factory", "Harbor", "Tower", "Chapel", "Clinic", "Bazaar",
               "Casino", "Lighthouse", "Aquarium", "Observatory", "Prison", "Warehouse"),
    vertical_streets=("Rose", "Lily", "Iris", "Tulip", "Daisy", "Poppy", "Lotus", "Orchid"),
    horizontal_streets=("Robin", "Finch", "Wren", "Heron", "Lark", "Crane", "Stork", "Dove"),
    easy_bar_categories=("Emu", "Gnu", "Koi", "Ape", "Bat", "Cow", "Hen", "Rat"),
    easy_pie_categories=("Nut", "Fig", "Yam", "Cod", "Soy", "Pea", "Bean", "Lime"),
    easy_titles=("Totals", "Points", "Tally", "Supply"),
    easy_category_axes=("Kind", "Class"),
    easy_value_axes=("Amount", "Level"),
    easy_landmarks=("Pub", "Lab", "Den", "Hut", "Dock", "Pier", "Farm", "Mill"),
    easy_vertical_streets=("Rose", "Lily", "Iris", "Bay"),
    easy_horizontal_streets=("Robin", "Finch", "Wren", "Lark"),
)

VOCABULARIES = {"train": TRAIN, "heldout": HELDOUT}


def vocabulary(split: str) -> Vocabulary:
    """The word lists a split draws from."""
    return VOCABULARIES[vocabulary_split(split)]
