"""Real captions in many scripts, shared by the caption tests (rules, flags, dedup, the page).

Each entry: the language, a caption a person would write for the picture of two dogs playing
with a red ball on a beach, and its expected length — words of spaced scripts and characters
(grapheme clusters) of scripts written without spaces, with how many of those make a word.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    language: str
    text: str
    words: int
    characters: int
    chars_per_word: int


CAPTIONS = (
    Sample("zh", "两只狗在海滩上玩红色的球", 0, 12, 1),
    Sample("zh", "穿着白色T恤的男孩在沙滩上跑。", 1, 13, 1),  # Latin "T" inside Chinese
    Sample("ja", "浜辺で遊ぶ二匹の犬と赤いボール", 0, 15, 2),
    Sample("ja", "赤いTシャツを着た男の子が走っている", 1, 17, 2),
    Sample("th", "สุนัขสองตัวเล่นลูกบอลสีแดงบนชายหาด", 0, 28, 3),
    Sample("hi", "क्या यह एक कुत्ता है जो दौड़ रहा है", 9, 0, 1),
    Sample("ar", "كَلْبَانِ يَلْعَبَانِ بِكُرَةٍ حَمْرَاءَ عَلَى الشَّاطِئِ", 6, 0, 1),
    Sample("he", "שְׁנֵי כְּלָבִים מְשַׂחֲקִים בְּכַדּוּר אָדֹם עַל הַחוֹף", 7, 0, 1),
    Sample("fa", "سگ‌ها در ساحل با توپ قرمز بازی می‌کنند", 8, 0, 1),
    Sample("ko", "두 마리의 개가 해변에서 빨간 공을 가지고 놀고 있다", 9, 0, 1),
    Sample("de", "Zwei Hunde spielen am Strand mit einem roten Ball", 9, 0, 1),
    Sample("de", "Ein Mädchen im Straßencafé trinkt Kakao", 6, 0, 1),
    Sample("emoji", "Two dogs 🐕🐕 play with a red ball ⚽ on the beach 🏖️", 10, 0, 1),
    Sample("emoji", "A family 👨‍👩‍👧 waves a flag 🏴󠁧󠁢󠁥󠁮󠁧󠁿 at the 🇩🇪 team", 8, 0, 1),
)

# Too short under the default rules: fewer than 3 words (quality) or 4 (annotators), in the
# caption's own unit.
TOO_SHORT = (
    Sample("zh", "小狗。", 0, 2, 1),
    Sample("ja", "犬と猫", 0, 3, 2),
    Sample("th", "สุนัข", 0, 3, 3),
    Sample("hi", "कुत्ता", 1, 0, 1),
    Sample("ko", "개", 1, 0, 1),
    Sample("emoji", "🐶🐶🐶🐶🐶", 0, 0, 1),
)
